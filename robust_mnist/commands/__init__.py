"""The subcommands of ``robust-mnist``, one module each: parse the arguments, call one library
function, print the result (see :mod:`robust_mnist.cli`)."""
