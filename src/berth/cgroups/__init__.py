"""berth.cgroups"""
