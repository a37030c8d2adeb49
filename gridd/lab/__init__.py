"""`gridd lab`: many tree-mode peers on one machine, on real Kubo daemons or in memory."""
