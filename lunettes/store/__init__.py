"""What the stores hold and how they are laid out: the SQLite schema, the Elasticsearch
index names, documents and templates, and the Elasticsearch connection keys. Shared by the
sinks that write (:mod:`lunettes.sinks`) and the API that reads (:mod:`lunettes.api`), so
neither reaches into the other."""
