// A real OpenID Connect provider (the npm package oidc-provider) for the dashboard's single
// sign-on tests: `node oidc_provider.mjs PORT REDIRECT_URI CLIENT_ID CLIENT_SECRET`.
// Its development login form accepts any login: the account id is what is typed, its
// address `<login>` when it holds an @ (else `<login>@acme.test`), verified unless the
// login starts with "unverified". Prints "ready" once it listens on 127.0.0.1:PORT.
import Provider from 'oidc-provider';

const [port, redirectUri, clientId, clientSecret] = process.argv.slice(2);

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  async findAccount(ctx, id) {
    const email = id.includes('@') ? id : `${id}@acme.test`;
    return {
      accountId: id,
      async claims() { return { sub: id, email, email_verified: !id.startsWith('unverified') }; },
    };
  },
  cookies: { keys: ['postline-tests-only'] },
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
