"""The chaos trials' Django project: three apps whose migrations the trials interrupt."""
