"""Tree mode: serverless federated learning over a shared Tangle."""
