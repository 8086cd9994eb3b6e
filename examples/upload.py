"""Binary upload in chunks, with the progress in the acknowledgements.

The client sends a file as binary events of at most ``CHUNK_SIZE`` bytes (well under the
server's ``max_payload``) and waits for each chunk's acknowledgement before sending the next.
The acknowledgement carries the progress, and it is the flow control as well: the server
holds at most one chunk per client, and since a socket's events are handled one at a time, in
the order they arrived (``max_concurrent_handlers=1``), the chunks are written in order
without any locking. A socket that disconnects mid-upload leaves no partial file behind.

socket.io-client 4.x (``file`` from an ``<input type="file">``)::

    const {chunkSize} = await socket.emitWithAck("upload", file.name, file.size);
    for (let offset = 0; offset < file.size; offset += chunkSize) {
      const chunk = await file.slice(offset, offset + chunkSize).arrayBuffer();
      const {received} = await socket.emitWithAck("chunk", chunk);
      progress.value = received / file.size;
    }
    const {name, size} = await socket.emitWithAck("done");

    python examples/upload.py [PORT]    # serves on 127.0.0.1:5001, stores files in ./uploads
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import trio

import trio_sio

CHUNK_SIZE = 256 * 1024
MAX_FILE_SIZE = 100 * 1024 * 1024


@dataclass
class Upload:
    """A file being received (one at a time per socket)."""

    path: Path  # where the file goes once complete
    partial: Path  # where it is written until then
    file: BinaryIO
    size: int
    received: int = 0

    async def discard(self) -> None:
        await trio.to_thread.run_sync(self.file.close)
        await trio.Path(self.partial).unlink(missing_ok=True)


def create_server(upload_dir: Path) -> trio_sio.Server:
    """A server that stores uploaded files in ``upload_dir``."""
    sio = trio_sio.Server()

    @sio.on("upload")
    async def start(sock: trio_sio.Socket, name: str, size: int) -> dict[str, Any]:
        if "upload" in sock.data:
            return {"error": "an upload is already in progress"}
        filename = PurePosixPath(str(name).replace("\\", "/")).name
        if not filename or filename.startswith("."):
            return {"error": "invalid file name"}
        if not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
            return {"error": f"the size must be between 0 and {MAX_FILE_SIZE} bytes"}
        path = upload_dir / filename  # a real application would choose the name itself
        partial = path.with_name(filename + ".part")
        file = await trio.to_thread.run_sync(partial.open, "wb")
        sock.data["upload"] = Upload(path, partial, file, size)
        return {"chunkSize": CHUNK_SIZE}

    @sio.on("chunk")
    async def chunk(sock: trio_sio.Socket, data: object) -> dict[str, Any]:
        upload: Upload | None = sock.data.get("upload")
        if upload is None:
            return {"error": "no upload in progress"}
        if not isinstance(data, bytes):
            return {"error": "chunks are binary data"}
        if upload.received + len(data) > upload.size:
            del sock.data["upload"]
            await upload.discard()
            return {"error": "more data than announced: upload cancelled"}
        await trio.to_thread.run_sync(upload.file.write, data)
        upload.received += len(data)
        return {"received": upload.received}

    @sio.on("done")
    async def done(sock: trio_sio.Socket) -> dict[str, Any]:
        upload: Upload | None = sock.data.pop("upload", None)
        if upload is None:
            return {"error": "no upload in progress"}
        if upload.received != upload.size:
            await upload.discard()
            return {"error": f"received {upload.received} of {upload.size} bytes"}
        await trio.to_thread.run_sync(upload.file.close)
        await trio.Path(upload.partial).replace(upload.path)
        print(f"stored {upload.path} ({upload.size} bytes)", flush=True)
        return {"name": upload.path.name, "size": upload.size}

    @sio.on_disconnect
    async def gone(sock: trio_sio.Socket, reason: trio_sio.DisconnectReason) -> None:
        upload: Upload | None = sock.data.pop("upload", None)
        if upload is not None:
            await upload.discard()

    return sio


async def main(upload_dir: Path, port: int) -> None:
    """Serve on 127.0.0.1 until Ctrl+C."""
    sio = create_server(upload_dir)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio_sio.serve_hypercorn, sio, "127.0.0.1", port)
            await anext(signals)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    upload_dir = Path("uploads").resolve()
    upload_dir.mkdir(exist_ok=True)
    print("storing uploads in", upload_dir, flush=True)
    trio.run(main, upload_dir, int(sys.argv[1]) if len(sys.argv) > 1 else 5001)
