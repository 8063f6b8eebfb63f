"""How sites split their data for honest evaluation, shared by the ServerApp and ClientApps.

A site holds out `VALIDATION_FRACTION` of its training split: the rounds are evaluated
on it and the best round is chosen by it. The test split answers only the final
evaluation, whose config sets `EVALUATE_SPLIT` to "test".
"""

#: The share of a site's training split held out to evaluate rounds.
VALIDATION_FRACTION = 0.2
#: Config key of an evaluation of the test split (the final one); rounds use validation.
EVALUATE_SPLIT = "evaluate-split"
