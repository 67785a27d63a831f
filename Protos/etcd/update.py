#!/usr/bin/env python3
"""Copies etcd's v3 API protos (rpc.proto and the two it imports) from Debian's
golang-etcd-server-dev package into Protos/etcd/, without their Go-only options (gogoproto and
the HTTP-gateway annotations, which change nothing on the wire and import protos Debian does not
ship with them). Run by hand when etcd's API is to be updated; the output is committed.

    apt-get download golang-etcd-server-dev && dpkg-deb -x golang-etcd-server-dev_*.deb /tmp/etcd
    python3 Protos/etcd/update.py /tmp/etcd/usr/share/gocode/src/go.etcd.io/etcd
"""
import pathlib
import re
import sys

source = pathlib.Path(sys.argv[1])
target = pathlib.Path(__file__).resolve().parent
files = {
    "etcdserver/etcdserverpb/rpc.proto": "rpc.proto",
    "mvcc/mvccpb/kv.proto": "kv.proto",
    "auth/authpb/auth.proto": "auth.proto",
}


def strip_http_options(text):
    """Removes every `option (google.api.http) = {...};`, whose braces nest."""
    marker = re.compile(r"\s*option \(google\.api\.http\) = \{")
    while match := marker.search(text):
        depth, index = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        end = text.index(";", index) + 1
        text = text[: match.start()] + text[end:]
    return text


for path, name in files.items():
    text = (source / path).read_text()
    text = re.sub(r'^import "(gogoproto/gogo|google/api/annotations)\.proto";\n', "", text, flags=re.M)
    text = re.sub(r"^option \(gogoproto\.[a-z_]+\) = [a-z]+;\n", "", text, flags=re.M)
    text = strip_http_options(text)
    text = re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)
    text = text.replace('import "etcd/mvcc/mvccpb/kv.proto";', 'import "etcd/kv.proto";')
    text = text.replace('import "etcd/auth/authpb/auth.proto";', 'import "etcd/auth.proto";')
    header = f"// From etcd 3.4.23 ({path}, Debian's golang-etcd-server-dev), Go-only options removed\n"
    header += "// by Protos/etcd/update.py.\n"
    (target / name).write_text(header + text)
