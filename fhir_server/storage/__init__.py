"""MongoDB storage: documents, indexes, transactions, and the one access checkpoint."""
