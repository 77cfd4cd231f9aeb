"""The registry, shared by every method: one database of issued model fingerprints, registered data sets and
service tokens, on SQLite (one machine) or PostgreSQL (several).

- `store`: `Registry`, the store with every operation as a method, and the commands' functions (migrate, export,
  import).
- `fingerprints`: issuing model fingerprints under the issue lock (minimum distance, lost COMMITs).
- `issued`: the files of issued models, written with their rows (a row iff its file) and repaired after a kill.
- `datasets`: data-set fingerprints and the decoder that reads them (`record_dataset`).
- `tokens`: service tokens (scopes, expiry, revocation; only hashes stored).
- `manifests`: C2PA manifest stores of signed images, for the service's soft-binding lookup.
- `dump`: the export format, checked whole before an import writes.
- `schema`: the schema version and its migrations; `base`: the store's back-end, schema and checked reads;
  `backends`: SQLite and PostgreSQL.
- `errors`: typed errors (input 400, not found 404, conflict 409, unusable 503 to the service).

The registry knows no method: what a row's model or decoder is, is checked by the method that writes it.
"""
