"""The full workflow: a web page retrains a scikit-learn model as an MLQ job."""
