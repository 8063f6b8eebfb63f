"""A synthetic dermatology world: hospitals treating psoriasis, atopic eczema and
hidradenitis suppurativa, each exporting in its own way (`flip synth dermatology`)."""

from flip.synth.dermatology.world import write_world

__all__ = ["write_world"]
