"""`image-cnn`: a small convolutional network (MONAI's Classifier) over each person's image.

The image arrives flattened in the last size*size columns of the dataset; the
network sees it as one grey channel: two strided residual convolution blocks
(8 and 16 channels), then one logit (one per class of a multiclass outcome).
"""

from __future__ import annotations

import torch

from flip.fl.tasks.seeding import seed_weights

CHANNELS = (8, 16)


class ImageCNN(torch.nn.Module):
    """`n_outputs` logits from the size x size image stored after the first `offset` columns."""

    def __init__(self, offset: int, size: int, n_outputs: int = 1) -> None:
        from monai.networks.nets import Classifier  # 0.7 s to import: only image tasks pay it

        super().__init__()
        self.offset, self.size = offset, size
        self.cnn = Classifier(
            in_shape=(1, size, size),
            classes=n_outputs,
            channels=CHANNELS,
            strides=(2, 2),
            num_res_units=1,
            norm="batch",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, self.offset : self.offset + self.size * self.size]
        return self.cnn(image.reshape(-1, 1, self.size, self.size))


def new_model(offset: int, size: int, seed: int, n_outputs: int = 1) -> torch.nn.Module:
    """An image CNN whose initial weights depend only on `seed`."""
    seed_weights(seed)
    return ImageCNN(offset, size, n_outputs)
