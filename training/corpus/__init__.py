"""The offline corpus: running text from installed packages, one JSON-lines file per source.

- `build`: the command (``python -m training.corpus.build --root ROOT --out DIR --sources all``).
- `builder`: every source to a file, with the manifest; `offline_sources`: which package holds
  what and how its text comes out; `package_readers`: the file formats (standard library only);
  `html_text`: plain text from documentation HTML; `text_filters`: boilerplate, licences, dedup.
"""
