"""Human-readable class names of the datasets behind the registered streams.

    >>> from clbench.data.class_names import CLASS_NAMES
    >>> CLASS_NAMES["fashion-mnist"][4]
    'Coat'

Keyed by :attr:`clbench.streams.StreamSpec.dataset`; index ``c`` is the name of label ``c`` in
the dataset's own numbering (the one the streams keep). A stream reads them through
:attr:`clbench.streams.Stream.class_names`, which falls back to ``"class c"`` for a dataset
missing here (a custom stream).
"""
from __future__ import annotations

_DIGITS = tuple(str(d) for d in range(10))

#: Fashion-MNIST's labels as its authors list them (Xiao et al. 2017)
FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")
#: CIFAR-10's ``batches.meta`` label_names
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
#: CIFAR-100's ``meta`` fine_label_names (alphabetical, as in the file)
CIFAR100 = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digits": _DIGITS, "mnist1d": _DIGITS, "mnist": _DIGITS,
    "fashion-mnist": FASHION_MNIST, "cifar10": CIFAR10, "cifar100": CIFAR100,
}

__all__ = ["CIFAR10", "CIFAR100", "CLASS_NAMES", "FASHION_MNIST"]
