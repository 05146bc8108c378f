"""A client and a server core back to back: one request, streamed partial results, a reply.

Run: ``python examples/sans_io_pair.py``. No sockets: this is the layer the WebSocket
transport drives. Each ``data_to_send()`` item is what would go into one WebSocket
binary message.
"""

from __future__ import annotations

from mcp_ws.protocol import Connection, MessageReceived, Role, StreamEnded


def main() -> list[str]:
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "count"}}
    sid = client.open_stream(call, end=True)
    seen: list[str] = []

    def pump(src: Connection, dst: Connection) -> list[object]:
        return [event for message in src.data_to_send() for event in dst.receive_data(message)]

    for event in pump(client, server) + pump(server, client):
        if isinstance(event, MessageReceived):  # the request, at the server
            server.acknowledge_received(event.stream_id, event.flow_controlled_length)
            for n in range(3):
                server.send_message(
                    sid,
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {"progressToken": 1, "progress": n},
                    },
                )
            server.send_message(
                sid, {"jsonrpc": "2.0", "id": 1, "result": {"done": True}}, end=True
            )
    for event in pump(server, client):
        if isinstance(event, MessageReceived):
            client.acknowledge_received(event.stream_id, event.flow_controlled_length)
            seen.append(str(event.message.get("params") or event.message.get("result")))
        elif isinstance(event, StreamEnded):
            seen.append(f"stream {event.stream_id} ended")
    for line in seen:
        print(line)
    return seen


if __name__ == "__main__":
    main()
