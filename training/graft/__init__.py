"""Fine-tune learned increments grafted onto a pretrained rotary LM (SmolLM2-135M by default).

    python -m training.graft --base smollm2-135m --increments per_layer \\
        --data /work/data/corpus-v1 --files en.jsonl --out runs/NAME --steps 400 [--resume]

What trains: the δ MLPs plus LoRA (peft; rank 16, alpha 32 on q/k/v/o by default), or with
``--full`` every weight of the base model in float32 (in bf16 an update of 2e-5 to a weight of 1
rounds away). The grafted model starts as the base model exactly (δ = 1, LoRA B = 0), so the
step-0 held-out loss *is* the base model's, measured on the same windows as the final one.

Data: every ``*.jsonl`` file of ``--data`` (or those named by ``--files``), the ``text`` field of
each line, tokenised with the base model's tokenizer, one EOS token after each document. Held
out: the documents whose blake2b text hash falls below ``--val-fraction`` (the corpus's own rule,
so a document is held out the same way here and in `training.tokens.prepare`). The tokens are
written once to ``OUT/tokens/`` and reused on resume (their metadata must match).

Guarantees (`training.runs.guards`, the same as the byte trainer's):

- batch k is `training.tokens.windows.train_batch(step=k)`, a pure function of the step, and
  the loop keeps no other state, so a run killed at any moment (SIGKILL included) and started
  again with the same command plus ``--resume`` continues from ``checkpoint.pt`` and computes
  what the uninterrupted run does (bit for bit on CPU); another command refuses to start there;
- ``checkpoint.pt`` (trainable weights, AdamW and schedule state, RNG states, step, history) is
  replaced atomically every ``--checkpoint-every`` updates;
- a non-finite loss or gradient norm stops the run before the optimizer step, naming the update;
  the checkpoint on disk is the last good one;
- at the end: ``adapter/`` (`lens_positions.rotary_adapter`: δ MLPs + LoRA in safetensors, a few
  MB, with ``card.md``/``card.json``) that ``load_rotary_model(base, increments, adapter=...)``
  rebuilds, and ``metrics.jsonl`` (train loss, held-out loss, δ per layer).

Modules: `data` (documents to token files), `loop` (the grafted model, its trainable parameters,
the held-out loss, the run), `card` (the adapter's card), `command` (the command line).
"""
