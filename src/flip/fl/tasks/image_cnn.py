"""`image-cnn`: a convolutional network over each person's image.

The image arrives flattened, channels first, in the last channels*size*size columns of
the dataset. The default network is small (MONAI's Classifier: two strided residual
blocks of 8 and 16 channels) so radiology demos stay fast; a task may name a real one
(`image_network`: MONAI's 2D ResNet-18/34 or DenseNet-121) for RGB photographs at
224 x 224. Each ends in one logit (one per class of a multiclass outcome), or one value
for a regression.
"""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights

CHANNELS = (8, 16)
#: The networks a task may name; "small-cnn" is the default.
NETWORKS = ("small-cnn", "resnet18", "resnet34", "densenet121")


def backbone(network: str, channels: int, size: int, n_outputs: int) -> torch.nn.Module:
    """A freshly initialised 2D network from (channels, size, size) to `n_outputs` values."""
    from monai.networks import nets  # 0.7 s to import: only image tasks pay it

    if network == "small-cnn":
        return nets.Classifier(
            in_shape=(channels, size, size),
            classes=n_outputs,
            channels=CHANNELS,
            strides=(2, 2),
            num_res_units=1,
            norm="batch",
        )
    if network in ("resnet18", "resnet34"):
        factory = nets.resnet18 if network == "resnet18" else nets.resnet34
        return factory(spatial_dims=2, n_input_channels=channels, num_classes=n_outputs)
    if network == "densenet121":
        return nets.DenseNet121(spatial_dims=2, in_channels=channels, out_channels=n_outputs)
    raise ValueError(f"unknown image network {network!r}: choose one of {', '.join(NETWORKS)}")


class ImageCNN(torch.nn.Module):
    """`n_outputs` values from the (channels, size, size) image after the first `offset` columns."""

    def __init__(
        self,
        offset: int,
        size: int,
        n_outputs: int = 1,
        channels: int = 1,
        network: str = "small-cnn",
    ) -> None:
        super().__init__()
        self.offset, self.size, self.channels = offset, size, channels
        self.cnn = backbone(network, channels, size, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = self.channels * self.size * self.size
        image = x[:, self.offset : self.offset + width]
        return self.cnn(image.reshape(-1, self.channels, self.size, self.size))


def new_model(
    offset: int,
    size: int,
    seed: int,
    n_outputs: int = 1,
    channels: int = 1,
    network: str = "small-cnn",
) -> torch.nn.Module:
    """An image network whose initial weights depend only on `seed`."""
    seed_weights(seed)
    return ImageCNN(offset, size, n_outputs, channels, network)
