"""gridd: a peer-to-peer ML grid on IPFS (federated Tangle learning and remote Keras training)."""

__version__ = "0.1.0"
