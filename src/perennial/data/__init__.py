"""Data: batch files and their readers, ingest, the split and the batch store, the ledger, validation
(Great Expectations), and the datasets perennial ships.
"""
