"""The CDK app's code: the settings model, the controller stack and one construct per capability."""
