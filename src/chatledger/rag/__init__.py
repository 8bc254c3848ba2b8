"""Retrieval-augmented generation: documents, parsing, chunking, index, retrieval, answering."""
