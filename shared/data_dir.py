"""The data dir holds the event log (bodies, addresses), the delivery ledger, the dev inbox
and maybe the master key: only the user Postline runs as may read it.

``secure`` sets the process umask to 077 (so every file and directory Postline, SQLite,
chDB or a library creates afterwards is 0600 / 0700), creates the dir 0700, and takes the
group and other bits off whatever an older version left there."""
from __future__ import annotations

import os
import stat
from pathlib import Path

UMASK = 0o077


def secure(data_dir: Path) -> None:
    """Umask 077 for the whole process; ``data_dir`` and everything under it owner-only.
    Entries owned by someone else are left alone (a mounted volume's root, say)."""
    os.umask(UMASK)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    uid = os.getuid()
    for path in [data_dir, *data_dir.rglob("*")]:
        try:
            st = path.lstat()
            if st.st_uid == uid and not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                path.chmod(stat.S_IMODE(st.st_mode) & 0o700)
        except FileNotFoundError:  # removed while we walked (a SQLite -shm, a chDB temp file)
            continue
