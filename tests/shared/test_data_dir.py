"""The data dir is owner-only: a running `postline all` creates every file 0600 and every
directory 0700 (the event log holds bodies and addresses), and tightens what an older
version left readable (issue 16, defect 9)."""
from __future__ import annotations

import stat

from tests.support.postline import Api, PostlineProcess


def modes(root):
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in [root, *root.rglob("*")] if not p.is_symlink()}


def test_data_dir_is_owner_only(tmp_path):
    data = tmp_path / "data"
    (data / "old").mkdir(parents=True, mode=0o755)
    (data / "old").chmod(0o755)
    (data / "old" / "leftover.txt").write_text("x")
    (data / "old" / "leftover.txt").chmod(0o644)
    proc = PostlineProcess(data, env={"POSTLINE_SECRET_KEY": ""}).start()  # master key generated into the dir
    try:
        api = Api(proc.url)
        sid = api.create_service()
        api.create_key(sid)
    finally:
        proc.stop()
    found = modes(data)
    assert "log.sqlite3" in found and "secret.key" in found, sorted(found)
    loose = {name: oct(mode) for name, mode in found.items() if mode & 0o077}
    assert not loose, loose
    assert found["."] == 0o700 and found["old"] == 0o700 and found["old/leftover.txt"] == 0o600
