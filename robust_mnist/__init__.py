"""robust_mnist: measure how unstable a digit classifier's probabilities are.

The package reproduces the Keras tutorial CNN trained on MNIST, perturbs digits in
controlled, physically meaningful ways and measures how the predicted probabilities move.
"""

__version__ = "0.1.0"
