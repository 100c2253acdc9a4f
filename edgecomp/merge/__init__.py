"""Token merging as a compile-time transform: static per-layer schedules (``schedule``), exportable merge
plans (``matching``) and model adapters (``vit``)."""
