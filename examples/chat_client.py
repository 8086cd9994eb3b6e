"""A second user of the chat (examples/chat/app.py), as a Trio program: it prints what the
room says, and sends each line typed on its standard input. End of input leaves the chat.

    hypercorn -k trio --bind 127.0.0.1:5001 examples/chat/app.py:app   # the chat
    python examples/chat_client.py                                     # URL: argv[1]
"""

from __future__ import annotations

import sys

import trio

import trio_sio

# Lines typed while the connection is down are sent once it is back (up to 16 of them).
client = trio_sio.Client(offline_buffer=16)


@client.on("chat message")
async def chat_message(msg: str) -> None:
    print(f"chat: {msg}", flush=True)


@client.on_disconnect
async def disconnected(reason: trio_sio.DisconnectReason) -> None:
    print(f"connection lost ({reason}), reconnecting", flush=True)


async def main(url: str = "http://127.0.0.1:5001") -> None:
    async with client.connect(url):
        print(f"joined {url} as {client.sid}", flush=True)
        await client.emit("chat message", "hello from Trio")
        async for line in trio.wrap_file(sys.stdin):
            await client.emit("chat message", line.rstrip("\n"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, sys.argv[1])
    else:
        trio.run(main)
