"""The KCL MultiLangDaemon mode: our projection as an amazon-kclpy record processor
(``consumer kcl-processor``), run by the Java KCL with the DynamoDB Streams adapter (deploy/kcl)."""
