"""What both floors (``floor_app.py`` on hypercorn, ``raw_floor.py`` on Trio sockets) say
over Engine.IO/Socket.IO: the open packet, the fixture's events, the rooms. Each floor
subclasses :class:`FloorSession` with its own queue; everything protocol-shaped is here, once.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Generic, TypeVar

RS = "\x1e"
#: Announced in the open packet: no client expects a ping during a run (no heartbeat).
PING_INTERVAL_MS = 300_000
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
loads = json.loads


class FloorSession:
    """One client of a floor: its id, rooms and CONNECT reply. Subclasses queue packets."""

    __slots__ = ("connect_reply", "rooms", "sid", "upgrading")

    def __init__(self) -> None:
        self.sid = secrets.token_urlsafe(15)
        self.rooms: set[str] = set()
        self.upgrading = False
        self.connect_reply = '40{"sid":"' + secrets.token_urlsafe(15) + '"}'

    def push(self, packet: str) -> None:
        """Queue one packet for the client and wake whoever waits for it."""
        raise NotImplementedError

    @staticmethod
    def encode_broadcast(text: str) -> Any:
        """``text`` (a packet) encoded once for every recipient of a broadcast (:meth:`deliver`)."""
        return None

    def deliver(self, packet: str, encoded: Any) -> None:
        """:meth:`push` of a broadcast packet, with what :meth:`encode_broadcast` made."""
        self.push(packet)

    def open_packet(self, upgrades: list[str]) -> str:
        return "0" + dumps(
            {
                "sid": self.sid,
                "upgrades": upgrades,
                "pingInterval": PING_INTERVAL_MS,
                "pingTimeout": 20_000,
                "maxPayload": 1_000_000,
            }
        )


S = TypeVar("S", bound=FloorSession)


class Fixture(Generic[S]):
    """A floor's sessions and rooms, and the fixture's behaviour on them."""

    def __init__(self) -> None:
        self.sessions: dict[str, S] = {}
        self.rooms: dict[str, set[S]] = {}

    def handle_packet(self, session: S, packet: str) -> None:
        """One Engine.IO packet from a client, whichever transport brought it."""
        if packet.startswith("42"):
            bracket = packet.index("[")
            ack_id = packet[2:bracket]
            event, *args = loads(packet[bracket:])
            if event == "echo":
                result: list[Any] = args
            elif event == "join":
                room = args[0]
                session.rooms.add(room)
                self.rooms.setdefault(room, set()).add(session)
                result = [room]
            elif event == "bcast":
                spec = args[0]
                payload = dumps("x" * spec["size"])
                members = list(self.rooms.get(spec["room"], ()))
                for i in range(spec["n"]):
                    text = '42["m",' + str(i) + "," + payload + "]"
                    encoded = session.encode_broadcast(text)  # once for every recipient
                    for member in members:
                        member.deliver(text, encoded)
                result = [spec["n"]]
            else:
                return
            if ack_id:
                session.push("43" + ack_id + dumps(result))
        elif packet.startswith("40"):
            session.push(session.connect_reply)
        elif packet == "1":
            self.forget(session)

    def forget(self, session: S) -> None:
        self.sessions.pop(session.sid, None)
        for room in session.rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.discard(session)
                if not members:
                    del self.rooms[room]
        session.rooms.clear()
