"""One construct per capability of the controller stack."""
