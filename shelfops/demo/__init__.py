"""The demo on the built-in synthetic shop: :mod:`.story` tells the whole story in acts (v1,
serve, drift, the autopilot's v2, a broken v3 stopped), :mod:`.report` draws it, :mod:`.timing`
says where its time went; :mod:`.pipeline` runs either the story or the stages one by one."""
