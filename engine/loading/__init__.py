"""Loading a project: parse -> schema-validate -> build models -> cross-check -> compile."""
