"""A ClientApp for the engine-failure test: it trains like the straggler app's prompt site,
but the process of partition 1 dies in round `die-at` (from the message's config), as a
Ray actor killed by the kernel or an operator would."""

import os

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    if int(context.node_config["partition-id"]) == 1 and config["server-round"] == config["die-at"]:
        os._exit(1)
    state = {
        k: torch.as_tensor(v) + 1.0 for k, v in msg.content["arrays"].to_torch_state_dict().items()
    }
    content = RecordDict(
        {"arrays": ArrayRecord(state), "metrics": MetricRecord({"num-examples": 10.0})}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    metrics = MetricRecord({"auroc": 0.5, "accuracy": 0.5, "num-examples": 10.0})
    site = ConfigRecord({"name": f"site-{partition}"})
    return Message(content=RecordDict({"metrics": metrics, "site": site}), reply_to=msg)
