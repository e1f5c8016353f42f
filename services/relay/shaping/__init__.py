"""Shaping per mailbox provider (docs/delivery.md "Shaping"): limits per provider
(``limits.py``), which replies mean "slow down" (``replies.py``), the installation-wide
leases, rate schedule and adaptive state (``store.py``), and the sender's gate around a
transaction (``shaper.py``)."""
