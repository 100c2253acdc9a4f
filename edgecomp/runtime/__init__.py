"""Running compiled artifacts: the TVM VM runner and the engines run/bench/eval use."""
