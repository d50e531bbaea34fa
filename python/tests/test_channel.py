"""The worker's end of the channel (herdsman.runtime.channel), over a real socket pair."""

import json
import socket

from herdsman.runtime.channel import Channel


def test_messages_are_one_json_object_per_line_and_unknown_input_is_ignored():
    ours, theirs = socket.socketpair()
    channel = Channel(ours.detach())
    channel.send("hello", pid=7, python="3.11.0")
    assert json.loads(theirs.recv(4096)) == {"type": "hello", "pid": 7, "python": "3.11.0"}

    received = []
    channel.on_message = received.append
    theirs.sendall(b'{"type":"report_at","requests":5}\nnot json\n\n{"type":"x"')
    channel._on_readable()
    assert received == [{"type": "report_at", "requests": 5}]
    theirs.sendall(b"}\n")
    channel._on_readable()
    assert received[-1] == {"type": "x"}


def test_end_of_file_marks_the_master_gone_once_and_sending_stops():
    ours, theirs = socket.socketpair()
    channel = Channel(ours.detach())
    gone = []
    channel.on_gone = lambda: gone.append(True)
    theirs.close()
    channel._on_readable()
    channel._on_readable()
    assert channel.gone and gone == [True]
    channel.send("heartbeat", requests=1)  # no error once gone
