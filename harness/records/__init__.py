"""Records: the versioned result of a run (`record`), its typed JSONL rows (`rows`), where its
files live (`layout`), atomic local storage (`store`), remote locations (`remote`) and the
provenance it carries (`provenance`). Records are the only link between running and rendering."""
