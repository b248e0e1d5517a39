"""The ``train`` section: where outputs go and how long, how often to save/evaluate/log."""

train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False, dtype="bfloat16"),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="auto",  # "cuda" if available else "cpu"; or name one
    seed=-1,  # -1: a random seed, logged
)
