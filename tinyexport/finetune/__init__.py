"""LoRA fine-tuning on top of peft: data (``data``), adapters (``lora``), the training loop (``train``) and
the written checkpoint + adapter (``output``). ``tinyexport finetune`` is a thin click wrapper around it."""
