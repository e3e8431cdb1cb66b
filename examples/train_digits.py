"""Train the lecture's CNN on real images: scikit-learn's bundled handwritten digits.

The seed code's model (Conv2D 32 -> MaxPooling -> Conv2D 64 -> MaxPooling -> Flatten ->
Dense 100 -> Dropout 0.4 -> Dense 10 softmax: 333,526 parameters) is written exactly as for
Keras, with ``from gpuconv import ...`` in place of ``from tensorflow import keras``. The 1,797
8x8 digit images are resized to the 28x28x1 input the model expects (bilinear), scaled to
[0, 1], and 20% are held out (``random_state=42``, stratified).

    python examples/train_digits.py [--epochs 12] [--backend numpy|cuda|cuda-emulator] [--seed 0]

Prints Keras' progress lines and the final validation accuracy; exits non-zero below
``--min-accuracy`` (default 0.97), so CI can run it as a check.
"""
import argparse
import sys

import numpy as np


def load_digits_28x28():
    """(images (1797, 28, 28, 1) float32 in [0, 1], labels (1797,) int64)."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("float32") / 16.0  # pixel values are 0..16
    resized = np.stack([zoom(img, 28 / 8, order=1) for img in images])
    return np.clip(resized, 0.0, 1.0)[..., None].astype("float32"), digits.target.astype("int64")


def seed_cnn():
    from gpuconv import Sequential, layers

    return Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(100, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(10, activation="softmax"),
    ])


def train(epochs=12, batch_size=32, backend="numpy", seed=0, verbose=2):
    """Train on 80% of the digits; returns (validation accuracy, History)."""
    import gpuconv
    from sklearn.model_selection import train_test_split

    gpuconv.set_backend(backend)
    gpuconv.utils.set_random_seed(seed)
    x, y = load_digits_28x28()
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)

    model = seed_cnn()
    assert model.count_params() == 333_526
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_data=(x_val, y_val),
                        verbose=verbose)
    val_loss, val_accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy {val_accuracy:.4f} (loss {val_loss:.4f}) after {len(history.epoch)} epochs "
          f"on {len(x_train)} training images, backend {gpuconv.get_backend()}")
    return val_accuracy, history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--min-accuracy", type=float, default=0.97)
    args = parser.parse_args(argv)
    accuracy, _ = train(args.epochs, args.batch_size, args.backend, args.seed, args.verbose)
    return 0 if accuracy >= args.min_accuracy else 1


if __name__ == "__main__":
    sys.exit(main())
