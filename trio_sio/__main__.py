"""``python -m trio_sio MODULE:SERVER``: serve on the native Trio host (see ``trio_sio._cli``)."""

from ._cli import main

main()
