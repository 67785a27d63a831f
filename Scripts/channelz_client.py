#!/usr/bin/env python3
"""Reads a process's channelz service (grpc.channelz.v1) with grpcio-channelz's client, as an
operator's tool would, and prints the tree as one JSON object, for the tests.

Channels, subchannels and sockets that close between being listed and being read (the process
goes on making and closing them) are left out.

Usage: ``channelz_client.py HOST:PORT`` prints
``{"channels": [{"id", "target", "state", "calls_started", "calls_succeeded", "calls_failed",
"subchannels": [{"id", "target", "state", "calls_started", "sockets": [{"id", "streams_started",
"streams_succeeded", "streams_failed", "messages_sent", "messages_received", "keep_alives_sent",
"local_flow_control_window", "remote_flow_control_window"}]}]}]}``.
"""

import json
import sys

import grpc
from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc


def _state(data):
    return channelz_pb2.ChannelConnectivityState.State.Name(data.state.state)


def _gone(error):
    """A channel, subchannel or socket closed between being listed and being read."""
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.NOT_FOUND


def _socket(stub, ref):
    try:
        socket = stub.GetSocket(channelz_pb2.GetSocketRequest(socket_id=ref.socket_id), timeout=10).socket
    except grpc.RpcError as error:
        if _gone(error):
            return None
        raise
    data = socket.data
    return {
        "id": ref.socket_id,
        "streams_started": data.streams_started,
        "streams_succeeded": data.streams_succeeded,
        "streams_failed": data.streams_failed,
        "messages_sent": data.messages_sent,
        "messages_received": data.messages_received,
        "keep_alives_sent": data.keep_alives_sent,
        "local_flow_control_window": data.local_flow_control_window.value,
        "remote_flow_control_window": data.remote_flow_control_window.value,
    }


def _subchannel(stub, ref):
    try:
        subchannel = stub.GetSubchannel(
            channelz_pb2.GetSubchannelRequest(subchannel_id=ref.subchannel_id), timeout=10
        ).subchannel
    except grpc.RpcError as error:
        if _gone(error):
            return None
        raise
    return {
        "id": ref.subchannel_id,
        "target": subchannel.data.target,
        "state": _state(subchannel.data),
        "calls_started": subchannel.data.calls_started,
        "sockets": [s for s in (_socket(stub, r) for r in subchannel.socket_ref) if s is not None],
    }


def main():
    with grpc.insecure_channel(sys.argv[1]) as channel:
        stub = channelz_pb2_grpc.ChannelzStub(channel)
        channels = []
        start = 0
        while True:
            page = stub.GetTopChannels(channelz_pb2.GetTopChannelsRequest(start_channel_id=start), timeout=10)
            for top in page.channel:
                channels.append(
                    {
                        "id": top.ref.channel_id,
                        "target": top.data.target,
                        "state": _state(top.data),
                        "calls_started": top.data.calls_started,
                        "calls_succeeded": top.data.calls_succeeded,
                        "calls_failed": top.data.calls_failed,
                        "subchannels": [
                            s for s in (_subchannel(stub, r) for r in top.subchannel_ref) if s is not None
                        ],
                    }
                )
                start = max(start, top.ref.channel_id + 1)
            if page.end or not page.channel:
                break
        print(json.dumps({"channels": channels}, sort_keys=True))


if __name__ == "__main__":
    main()
