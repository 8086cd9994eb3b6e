"""trio_sio: a Socket.IO server on Trio."""
