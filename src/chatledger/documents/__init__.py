"""Documents of a chatbot: upload, versions, deletion, and the content-addressed store."""
