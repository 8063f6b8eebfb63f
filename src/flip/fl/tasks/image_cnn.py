"""`image-cnn`: a convolutional network over each person's image or volume.

The image arrives flattened, channels first, in the last channels*size*size columns of
the dataset (channels*depth*size*size for a volume: a CT or MR series). The default network
is small (MONAI's Classifier: two strided residual blocks of 8 and 16 channels) so radiology
demos stay fast; a task may name a real one (`image_network`: MONAI's ResNet-18/34,
DenseNet-121, or a small DenseNet of three short blocks) for RGB photographs at 224 x 224 or
for volumes. Every network is 2D over a picture and 3D over a volume. Each ends in one logit
(one per class of a multiclass outcome), or one value for a regression.
"""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights

CHANNELS = (8, 16)
#: The networks a task may name; "small-cnn" is the default.
NETWORKS = ("small-cnn", "resnet18", "resnet34", "densenet121", "densenet-small")
#: densenet-small: MONAI's DenseNet with few features and three blocks of two layers.
SMALL_DENSENET = {"init_features": 16, "growth_rate": 8, "block_config": (2, 2, 2)}


def backbone(
    network: str, channels: int, size: int, n_outputs: int, depth: int | None = None
) -> torch.nn.Module:
    """A freshly initialised network from (channels, size, size), or from (channels, depth,
    size, size) when `depth` is given (3D), to `n_outputs` values."""
    from monai.networks import nets  # 0.7 s to import: only image tasks pay it

    dims = 2 if depth is None else 3
    if network == "small-cnn":
        shape = (channels, size, size) if depth is None else (channels, depth, size, size)
        return nets.Classifier(
            in_shape=shape,
            classes=n_outputs,
            channels=CHANNELS,
            strides=(2, 2),
            num_res_units=1,
            norm="batch",
        )
    if network in ("resnet18", "resnet34"):
        factory = nets.resnet18 if network == "resnet18" else nets.resnet34
        return factory(spatial_dims=dims, n_input_channels=channels, num_classes=n_outputs)
    if network == "densenet121":
        return nets.DenseNet121(spatial_dims=dims, in_channels=channels, out_channels=n_outputs)
    if network == "densenet-small":
        return nets.DenseNet(
            spatial_dims=dims, in_channels=channels, out_channels=n_outputs, **SMALL_DENSENET
        )
    raise ValueError(f"unknown image network {network!r}: choose one of {', '.join(NETWORKS)}")


class ImageCNN(torch.nn.Module):
    """`n_outputs` values from the (channels, [depth,] size, size) image after the first
    `offset` columns."""

    def __init__(
        self,
        offset: int,
        size: int,
        n_outputs: int = 1,
        channels: int = 1,
        network: str = "small-cnn",
        depth: int | None = None,
    ) -> None:
        super().__init__()
        self.offset, self.size, self.channels, self.depth = offset, size, channels, depth
        self.cnn = backbone(network, channels, size, n_outputs, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.channels, self.size, self.size)
        if self.depth is not None:
            shape = (self.channels, self.depth, self.size, self.size)
        width = shape[0] * shape[1] * shape[2] * (shape[3] if len(shape) == 4 else 1)
        image = x[:, self.offset : self.offset + width]
        return self.cnn(image.reshape(-1, *shape))


def new_model(
    offset: int,
    size: int,
    seed: int,
    n_outputs: int = 1,
    channels: int = 1,
    network: str = "small-cnn",
    depth: int | None = None,
) -> torch.nn.Module:
    """An image network whose initial weights depend only on `seed`."""
    seed_weights(seed)
    return ImageCNN(offset, size, n_outputs, channels, network, depth)
