"""`postline rotate-secret-key` re-seals DKIM keys, webhook secrets and TOTP secrets under the new master
key; after it the old key opens nothing and the new one opens everything."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.exceptions import InvalidTag

from services.api.manage import credentials
from shared.crypto import load_or_create_master_key, unseal
from tests.support.inproc import add_user, api_runtime
from tests.support.postline import ADMIN_TOKEN, ROOT

OLD, NEW = "test-master-key", "the-new-master-key"


def sealed(state):
    for d in state.domains.values():
        yield d.rsa_private_sealed, d.domain_id
        yield d.ed_private_sealed, d.domain_id
        for field in ("rsa_private_sealed", "ed_private_sealed"):  # a DKIM rotation's pending set
            yield (d.pending_dkim or {}).get(field), d.domain_id
    for w in state.webhooks.values():
        yield w.secret_sealed, w.webhook_id
    for u in state.users.values():
        yield u.totp_sealed, f"totp:{u.user_id}"


async def test_rotate_secret_key_command(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):  # sealed under OLD (api_runtime's key)
        sid = await admin.service()
        did = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})).json()["id"]
        assert (await admin("POST", f"/api/email/services/{sid}/domains/{did}/rotate-dkim")).status_code == 200
        await admin("POST", f"/api/email/services/{sid}/webhooks",
                    json={"url": "https://93.184.215.14/hook", "events": ["delivered"]})
        user = await add_user(rt, "default", "tia@acme.test", "viewer")
        await rt.control.change(user, totp_sealed=credentials.seal_totp(rt.settings.master_key, user, "JBSWY3DPEHPK3PXP"))
    env = {**os.environ, "POSTLINE_DATA_DIR": str(tmp_path), "POSTLINE_ADMIN_TOKEN": ADMIN_TOKEN,
           "POSTLINE_SECRET_KEY": NEW, "POSTLINE_PREVIOUS_SECRET_KEY": OLD}
    for expected in ("re-sealed 1 domains, 1 webhooks and 1 users'", "re-sealed 0 domains, 0 webhooks and 0 users'"):
        out = subprocess.run([sys.executable, "-m", "services.cli", "rotate-secret-key"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and expected in out.stdout, out.stdout + out.stderr
    old, new = (load_or_create_master_key(k, tmp_path) for k in (OLD, NEW))
    async with api_runtime(tmp_path) as (rt, admin):
        items = list(sealed(rt.control.state))
        assert len(items) == 6 and all(value for value, _ in items)
        for value, context in items:
            assert unseal(new, value, context)
            with pytest.raises(InvalidTag):
                unseal(old, value, context)
        # the audit log says who re-sealed what, and shows no sealed value (shared/audit.py)
        entries = [e for wid in rt.control.state.workspaces for e in rt.control.state.audit.newest(wid)]
        rotated = [e for e in entries if e.actor_type == "cli"]
        assert sorted(e.action for e in rotated) == ["domain.updated", "user.updated", "webhook.updated"]
        assert all(e.actor_id.endswith(": postline rotate-secret-key") for e in rotated)
        assert all(set(e.after.values()) == {"[redacted]"} for e in rotated)
        # the rotate-dkim entry lists the pending set with its sealed private keys redacted
        rotation = next(e.after for e in entries if e.after and "pending_dkim" in e.after)
        assert rotation["pending_dkim"]["rsa_private_sealed"] == rotation["pending_dkim"]["ed_private_sealed"] == "[redacted]"
        assert rotation["pending_dkim"]["rsa_selector"].startswith("plr")
