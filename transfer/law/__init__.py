"""The law the transfer gate applies, as versioned data: TOML tables with source and date, and their loader.

    regimes.toml          origin regimes: territory, adequate destinations, accepted bases
    bases.toml            the evidence each transfer basis needs (SCC module, TIA age, ...)
    concern.toml          28 CFR 202 countries of concern and the bulk US-person thresholds
    countries.toml        region codes -> regimes; the EU/EEA member list
    storage_regions.toml  cloud storage regions -> countries
    duo.toml              which declared purposes a release's DUO terms admit

transfer.law.tables reads them into a LawTables value; its digest pins the content a decision used.
"""
