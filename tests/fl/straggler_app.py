"""A ClientApp for the straggler test: every site adds its own step to the weights,
and the site of partition 1 answers its train message only `straggle` seconds (from the
message's config) after it arrives, so after the round's timeout whenever it starts."""

import time

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    if partition == 1:
        time.sleep(float(msg.content["config"]["straggle"]))
    step = 100.0 if partition == 1 else 1.0
    state = {
        k: torch.as_tensor(v) + step for k, v in msg.content["arrays"].to_torch_state_dict().items()
    }
    content = RecordDict(
        {"arrays": ArrayRecord(state), "metrics": MetricRecord({"num-examples": 10.0})}
    )
    return Message(content=content, reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """An empty answer: the test's warm-up, which starts each site's actor."""
    return Message(content=RecordDict(), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    metrics = MetricRecord({"auroc": 0.5, "accuracy": 0.5, "num-examples": 10.0})
    site = ConfigRecord({"name": f"site-{partition}"})
    return Message(content=RecordDict({"metrics": metrics, "site": site}), reply_to=msg)
