"""The shared core of the course: what every stage uses, importing no stage module (a test checks it).

``config`` (profiles and per-stage settings), ``artifacts`` (paths, the stage registry, atomic writes), ``chat``
(the chat format), ``loading`` (models, tokenizers, the one device/precision decision, 4-bit, LoRA, trainer
arguments), ``base_model`` (the tiny offline base model), ``generation`` (sampling, log-probs, KL), ``text_metrics``
(ROUGE, BLEU, distinct-n, win rate), ``compare`` (policies measured on the same held-out prompts), ``plots``.
"""
