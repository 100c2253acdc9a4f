"""Latency measurement: local engines in worker processes, rounds interleaved (measure, worker); remote devices
through TVM's RPC tracker (tracker, remote, farm, rpc_server); statistics (stats), provenance (provenance),
the bench JSON (records), its table (table) and plots (plot)."""
