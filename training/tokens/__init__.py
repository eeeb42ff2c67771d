"""Token data: from documents to the token files a trainer reads, and back.

- `sources`: parse a source spec and stream documents (Hub or local files, one `datasets` call).
- `byte_tokens`: byte tokenisation (0-255, separator 256), the split by document hash, the token
  files and their metadata; `prepare`: its command (``python -m training.tokens.prepare``).
- `windows`: training batches as a pure function of the step, and fixed validation windows.
- `heldout`: the validation documents as JSON lines for the analyses; `device_pack`: a token
  folder compressed for the GPU machine.
"""
