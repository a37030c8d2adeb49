"""Tree mode: serverless federated learning over a shared Tangle.

Modules, in the order data flows through them:
  settings  TreeSettings: configs/tree.yaml < environment < CLI flags, validated by name
  messages  pubsub messages (tree.tx / tree.heads / tree.hello) and transaction records,
            whose IPFS CID is derived from the transaction id (how history is fetched)
  genesis   create_genesis / load_genesis / topic_for: the recipe, model and first weights
  weights   WeightsBank: fetch, check (shape, NaN, size), pin and cache weights by CID
  builder   TangleBuilder: insert a transaction only when complete, fetching ancestors
  trainer   LocalTrainer: train and evaluate on the peer's own data
  state     the peer's log and state file (crash-safe)
  peer      TreePeer: process_messages / train_step / announce / run
  cli       start_worker --tree, gridd genesis
  notebook  open_tangle / create_tangle behind Client().tangle(...) in Jupyter
"""
