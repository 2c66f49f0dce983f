"""The library behind the scripts (run_ner.py, distill.py, run_mlm.py, tag.py, ...): neither shipped with
checkpoints nor run on its own."""
