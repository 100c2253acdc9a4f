"""A TVM RPC server (``tvm.rpc.Server``) that also answers ``edgecomp.provenance``.

Same options as ``python -m tvm.exec.rpc_server`` for what ``edgecomp farm`` uses. The only difference is
TVM's documented ``server_init_callback`` hook, which registers the global function
``edgecomp.provenance`` (``provenance.machine_json``) in the server's worker before any session forks
from it, so a client can ask the device what it is, how loaded and how hot, next to every number.
"""

from __future__ import annotations

import argparse
import logging


def register_provenance() -> None:
    """server_init_callback: runs in TVM's server worker process (pickled by reference)."""
    import tvm_ffi

    from edgecomp.bench.provenance import REMOTE_FUNC, machine_json

    tvm_ffi.register_global_func(REMOTE_FUNC, machine_json, override=True)


def main(argv: list[str] | None = None) -> None:
    from tvm import rpc

    ap = argparse.ArgumentParser(prog="python -m edgecomp.bench.rpc_server")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless told otherwise)")
    ap.add_argument("--port", type=int, default=9090, help="first port to try")
    ap.add_argument("--port-end", type=int, default=9199, help="end of the port search range")
    ap.add_argument("--tracker", required=True, help="HOST:PORT of the RPC tracker to register with")
    ap.add_argument("--key", required=True, help="device key to register under")
    ap.add_argument("--silent", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO)
    host, port = args.tracker.rsplit(":", 1)
    server = rpc.Server(args.host, args.port, args.port_end, key=args.key, tracker_addr=(host, int(port)),
                        silent=args.silent, server_init_callback=register_provenance)
    server.proc.join()


if __name__ == "__main__":
    main()
