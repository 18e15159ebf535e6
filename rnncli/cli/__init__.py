"""The command line: the typer commands (`app`), terminal output (`ui`), `inspect`'s report and
page (`report`, `probe_view`, `page`). Each command turns flags into typed settings and makes one
call to the layers below.

Imports: any layer of rnncli."""
